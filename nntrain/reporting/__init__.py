"""Everything a person sees: the terminal (rich), TensorBoard, figures and sweep summaries.
Nothing here trains or infers: it is handed numbers, tensors and images."""

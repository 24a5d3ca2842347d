"""What people read: the model card (`model_card`), PDF reports (`pdf`), figures (`plots`, `decision_plots`) and
result tables (`tables`)."""

"""What the kopf handlers in main.py call: one module per concern."""

"""The freshness benchmark as a runnable app over ``ragflow.bench``: ragflow and Pathway side by side."""

"""The web UI's views, one module per concern. Each calls services and selectors; none holds logic."""

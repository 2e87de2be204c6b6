"""pytester drives pytest sessions that use robaudit's pytest plugin."""
pytest_plugins = ["pytester"]

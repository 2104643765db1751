"""Reference implementations the service is measured against."""

"""Alerts when a fake is found: subscriptions (settings or API), signed webhooks (Standard
Webhooks) and e-mail (SMTP), delivered at least once through the job queue with backoff."""

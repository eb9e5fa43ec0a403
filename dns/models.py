"""Models arrive with this area's issue; the app is installed so migrations and URLs have a home."""

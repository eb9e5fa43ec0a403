"""panelctl: the panel's command-line client, speaking the REST API with a token."""

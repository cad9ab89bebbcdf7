"""Who may reach the gateway: the admin token, Host and Origin checks, API-key authentication."""

"""The Textual dashboard (`aigw tui`). Talks to the daemon over HTTP only; never imports
providers or local engines."""

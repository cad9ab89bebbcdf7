"""The Anthropic Messages API dialect (`/v1/messages`): a translator over the request pipeline."""

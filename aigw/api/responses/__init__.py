"""The OpenAI Responses API dialect (`/v1/responses`): a translator over the request pipeline."""

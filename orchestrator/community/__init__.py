"""A Space's Community tab: discussions, pull requests and likes, as the Hub has them."""

"""Behaviour and catalogue analytics: product recognition from photos (later: sentiment, intent, segments)."""

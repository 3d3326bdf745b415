"""Sponsored products: campaigns, matching, pCTR, the auction and the ad server."""

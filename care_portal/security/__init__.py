"""Sign-in security for the portal: TOTP second factor, recovery codes, lockout and rate limits."""

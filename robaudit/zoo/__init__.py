"""``robaudit zoo``: audit every model of a manifest, each in its own process, into one leaderboard."""

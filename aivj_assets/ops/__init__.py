"""Operations: machine monitoring, the notifier (Telegram, email), pause control, bot commands (no Dagster)."""

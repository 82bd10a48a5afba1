"""The exchange: markets, order books, accounts (pure engine) and its wire contract."""

"""The typed key/value config store: catalogue (what may be set), store (what is set), rules."""

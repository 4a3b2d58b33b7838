"""Chat (SPEC §6): one token stream from any provider, conversations in the store, context
trimming, and the generation tasks behind ``POST /api/conversations/{id}/messages``."""

"""Card authentication at the point: tap challenges, card-signed debits, key registration, certificates."""

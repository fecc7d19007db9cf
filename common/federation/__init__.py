"""What both sides of a federation share, without Flower: the round schema, message keys, PKI."""

"""The dataset: layout discovery, image decoding, scanning, duplicates, splits, the decode cache, the journal."""

"""What an operator reads: the trail (written with the store's transactions), `trace`, the
warnings of `doctor` and `/health` and their evidence, `report`."""

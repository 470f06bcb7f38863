"""Network definitions drylocal implements itself, keyed like the upstream checkpoints they load."""

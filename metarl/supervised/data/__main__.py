"""``python -m metarl.supervised.data --root ../shared/data/omniglot``: warm the Omniglot cache, print split sizes."""

from metarl.supervised.data.omniglot import main

main()

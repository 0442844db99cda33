"""The three entropy signals. Each scorer turns batches of texts into score columns."""

SIGNALS = ("information", "generative", "semantic")

"""The analysis stage: per-model indicator tests (:mod:`.indicators`) and their statistics (:mod:`.stats`)."""

"""The autojudge: compile once, run every test, a verdict each (``judge``), its public
data (``models``) and the output checkers (``checkers``)."""

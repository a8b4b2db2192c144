"""The BentoML scoring service: loads the @champion ensemble and serves CRMs over HTTP."""

"""The console: web pages for brokers served by the scoring service at /console (step 12, issue #19)."""

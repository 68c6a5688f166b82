"""The live document Q&A server: ``ragflow serve`` over a bundled folder of real sample documents."""

"""The base layer every stage stands on: errors, artifact metadata and sidecars, atomic file output, the
format table, host facts, optional-dependency imports, result formatting, logging, and the gate policy."""

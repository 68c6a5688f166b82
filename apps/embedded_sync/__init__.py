"""An application that embeds live index sync: a folder kept searchable while the app runs."""

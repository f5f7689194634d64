"""Pure logic with no I/O: phone numbers, SMS encoding, templates, keywords, quiet hours."""

"""The clerk's local page (127.0.0.1:8001): a browser shapes Arabic, terminals do not."""

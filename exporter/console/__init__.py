"""The web console at /console: the product page's three-step wizard and the integrations page (docs/architecture.md, "The console")."""

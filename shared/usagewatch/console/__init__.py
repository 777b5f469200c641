"""The web console (issue 28): one Lambda function behind an HTTP API with a JWT authorizer, HTML rendered on
the server (Jinja2, autoescaped) and htmx for the interactions; docs/console.md."""

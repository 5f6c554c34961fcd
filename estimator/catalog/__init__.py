"""The catalogs as typed records: loading and validating the YAML files (fields, records, core),
node types and published layouts (systems), prices (pricing) and the parse cache. Imports only the base."""

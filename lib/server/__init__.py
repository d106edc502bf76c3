"""What the app adds to MONAI Label's server: login, roles, limits and safe versions of the upload routes."""

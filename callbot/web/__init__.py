"""HTTP surface: health, call log API (the dashboard and agent console grow here)."""

"""Test support: fixture HTTP site, loopback guard, factories."""

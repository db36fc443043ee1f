"""Helpers for the BatchNorm notebooks: data, gradient checking, plots, public checks."""

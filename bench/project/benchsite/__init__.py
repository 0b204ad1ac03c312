"""A minimal Django project that exercises each response path the benchmark compares."""

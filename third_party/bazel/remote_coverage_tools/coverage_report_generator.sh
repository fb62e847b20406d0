#!/bin/sh
echo "otaro: remote coverage report generation is not configured" >&2
exit 1

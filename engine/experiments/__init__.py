"""Work that runs many trainings: strategy comparisons and label-issue detection."""

"""Faust stream processing: lead events from Kafka into the online and offline stores."""

"""Operations: metrics and health endpoints, profile reload, incident records and sinks."""

using System.Net.Sockets;
using Npgsql;

namespace Replicator.Core.Sql;

/// <summary>
/// Classifies failures by SQLSTATE, never by message text: a transient failure is retried with
/// backoff, a permanent one stops the process with its message.
/// </summary>
public static class PostgresErrors
{
    /// <summary>True when retrying later may succeed: connection loss, server restart, overload.</summary>
    public static bool IsTransient(Exception e) => e switch
    {
        PostgresException pg => pg.SqlState switch
        {
            PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
                or PostgresErrorCodes.TooManyConnections or PostgresErrorCodes.SerializationFailure
                or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.ConnectionFailure
                or PostgresErrorCodes.ConnectionException or PostgresErrorCodes.SqlClientUnableToEstablishSqlConnection
                or PostgresErrorCodes.ObjectInUse or PostgresErrorCodes.LockNotAvailable => true,
            _ => false,
        },
        NpgsqlException { InnerException: SocketException or IOException or TimeoutException } => true,
        NpgsqlException n => n.IsTransient,
        SocketException or IOException or TimeoutException => true,
        _ => false,
    };

    /// <summary>Authentication and authorization failures (SQLSTATE class 28): never retried.</summary>
    public static bool IsAuthentication(Exception e) =>
        e is PostgresException pg && pg.SqlState.StartsWith("28", StringComparison.Ordinal);
}

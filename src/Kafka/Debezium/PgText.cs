using System.Globalization;
using System.Numerics;
using System.Text;

namespace Replicator.Kafka.Debezium;

/// <summary>
/// PostgreSQL text-format values (as pgoutput sends them, with DateStyle ISO and IntervalStyle
/// postgres — the session settings Capture uses) to and from the numbers Debezium's semantic types
/// carry. Dates use the proleptic Gregorian calendar like java.time; BC years are astronomical
/// (1 BC = year 0).
/// </summary>
internal static class PgText
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public const long MicrosPerSecond = 1_000_000;
    public const long MicrosPerDay = 86_400L * MicrosPerSecond;

    // Howard Hinnant's days_from_civil / civil_from_days: exact for any year, negative included.
    public static long DaysFromCivil(long y, int m, int d)
    {
        y -= m <= 2 ? 1 : 0;
        var era = (y >= 0 ? y : y - 399) / 400;
        var yoe = y - (era * 400);
        var doy = ((153 * (m + (m > 2 ? -3 : 9))) + 2) / 5 + d - 1;
        var doe = (yoe * 365) + (yoe / 4) - (yoe / 100) + doy;
        return (era * 146097) + doe - 719468;
    }

    public static (long Year, int Month, int Day) CivilFromDays(long z)
    {
        z += 719468;
        var era = (z >= 0 ? z : z - 146096) / 146097;
        var doe = z - (era * 146097);
        var yoe = (doe - (doe / 1460) + (doe / 36524) - (doe / 146096)) / 365;
        var y = yoe + (era * 400);
        var doy = doe - ((365 * yoe) + (yoe / 4) - (yoe / 100));
        var mp = ((5 * doy) + 2) / 153;
        var d = (int)(doy - (((153 * mp) + 2) / 5) + 1);
        var m = (int)(mp < 10 ? mp + 3 : mp - 9);
        return (y + (m <= 2 ? 1 : 0), m, d);
    }

    /// <summary><c>YYYY-MM-DD[ BC]</c> → days since 1970-01-01.</summary>
    public static int ParseDate(string text)
    {
        var bc = text.EndsWith(" BC", StringComparison.Ordinal);
        var s = bc ? text[..^3] : text;
        var (y, m, d) = SplitDate(s);
        return checked((int)DaysFromCivil(bc ? 1 - y : y, m, d));
    }

    private static (long Y, int M, int D) SplitDate(ReadOnlySpan<char> s)
    {
        var first = s.IndexOf('-');
        var last = s.LastIndexOf('-');
        if (first <= 0 || last == first)
            throw new FormatException($"not an ISO date: '{s}'");
        return (long.Parse(s[..first], Inv), int.Parse(s[(first + 1)..last], Inv), int.Parse(s[(last + 1)..], Inv));
    }

    public static string FormatDate(long days)
    {
        var (y, m, d) = CivilFromDays(days);
        return y > 0
            ? string.Create(Inv, $"{y:0000}-{m:00}-{d:00}")
            : string.Create(Inv, $"{1 - y:0000}-{m:00}-{d:00} BC");
    }

    /// <summary><c>HH:MM:SS[.ffffff]</c> → microseconds since midnight (24:00:00 allowed).</summary>
    public static long ParseTimeMicros(ReadOnlySpan<char> s)
    {
        if (s.Length < 8 || s[2] != ':' || s[5] != ':')
            throw new FormatException($"not a time: '{s}'");
        long h = int.Parse(s[..2], Inv), mi = int.Parse(s[3..5], Inv), sec = int.Parse(s[6..8], Inv);
        long frac = 0;
        if (s.Length > 8)
        {
            if (s[8] != '.')
                throw new FormatException($"not a time: '{s}'");
            var digits = s[9..];
            frac = long.Parse(digits, Inv);
            for (var i = digits.Length; i < 6; i++)
                frac *= 10;
            for (var i = digits.Length; i > 6; i--)
                frac /= 10;
        }

        return (((h * 60) + mi) * 60 + sec) * MicrosPerSecond + frac;
    }

    public static string FormatTime(long micros, bool trimFraction = true)
    {
        var sec = micros / MicrosPerSecond;
        var frac = micros % MicrosPerSecond;
        var text = string.Create(Inv, $"{sec / 3600:00}:{sec / 60 % 60:00}:{sec % 60:00}");
        return frac == 0 ? text : text + "." + (trimFraction ? frac.ToString("000000", Inv).TrimEnd('0') : frac.ToString("000000", Inv));
    }

    /// <summary><c>YYYY-MM-DD HH:MM:SS[.ffffff][ BC]</c> → microseconds since the epoch.</summary>
    public static long ParseTimestampMicros(string text)
    {
        var bc = text.EndsWith(" BC", StringComparison.Ordinal);
        var s = bc ? text.AsSpan(0, text.Length - 3) : text.AsSpan();
        var space = s.IndexOf(' ');
        if (space < 0)
            throw new FormatException($"not a timestamp: '{text}'");
        var (y, m, d) = SplitDate(s[..space]);
        var days = DaysFromCivil(bc ? 1 - y : y, m, d);
        return (days * MicrosPerDay) + ParseTimeMicros(s[(space + 1)..]);
    }

    public static string FormatTimestamp(long micros)
    {
        var days = FloorDiv(micros, MicrosPerDay);
        var time = micros - (days * MicrosPerDay);
        var (y, m, d) = CivilFromDays(days);
        var date = string.Create(Inv, $"{(y > 0 ? y : 1 - y):0000}-{m:00}-{d:00}");
        return date + " " + FormatTime(time) + (y > 0 ? "" : " BC");
    }

    /// <summary><c>YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]][ BC]</c> → microseconds since the epoch (UTC).</summary>
    public static long ParseTimestamptzMicros(string text)
    {
        var bc = text.EndsWith(" BC", StringComparison.Ordinal);
        var s = bc ? text[..^3] : text;
        var space = s.IndexOf(' ', StringComparison.Ordinal);
        var sign = s.IndexOfAny(['+', '-'], space + 1);
        if (space < 0 || sign < 0)
            throw new FormatException($"not a timestamp with time zone: '{text}'");
        var local = ParseTimestampMicros(s[..sign] + (bc ? " BC" : ""));
        return local - ParseOffsetSeconds(s.AsSpan(sign)) * MicrosPerSecond;
    }

    private static long ParseOffsetSeconds(ReadOnlySpan<char> s)
    {
        var negative = s[0] == '-';
        var parts = s[1..].ToString().Split(':');
        long seconds = int.Parse(parts[0], Inv) * 3600L;
        if (parts.Length > 1)
            seconds += int.Parse(parts[1], Inv) * 60L;
        if (parts.Length > 2)
            seconds += int.Parse(parts[2], Inv);
        return negative ? -seconds : seconds;
    }

    /// <summary>
    /// io.debezium.time.ZonedTimestamp's text: UTC, ISO-8601, <c>Z</c>. With a declared or default
    /// fractional width (1–9) exactly that many digits, else java.time's ISO_OFFSET_DATE_TIME
    /// (fraction only when non-zero, trailing zeros dropped).
    /// </summary>
    public static string FormatZonedTimestamp(long utcMicros, int fractionalWidth)
    {
        var days = FloorDiv(utcMicros, MicrosPerDay);
        var time = utcMicros - (days * MicrosPerDay);
        var (y, m, d) = CivilFromDays(days);
        var sec = time / MicrosPerSecond;
        var frac = time % MicrosPerSecond;
        var sb = new StringBuilder();
        sb.Append(string.Create(Inv, $"{y:0000}-{m:00}-{d:00}T{sec / 3600:00}:{sec / 60 % 60:00}:{sec % 60:00}"));
        var digits = frac.ToString("000000", Inv) + "000";
        if (fractionalWidth is > 0 and <= 9)
            sb.Append('.').Append(digits.AsSpan(0, fractionalWidth));
        else if (frac != 0)
            sb.Append('.').Append(digits.TrimEnd('0'));
        sb.Append('Z');
        return sb.ToString();
    }

    /// <summary>timetz text → io.debezium.time.ZonedTime: the time moved to UTC, ISO_OFFSET_TIME.</summary>
    public static string FormatZonedTime(string timetz)
    {
        var sign = timetz.IndexOfAny(['+', '-'], 8);
        if (sign < 0)
            throw new FormatException($"not a time with time zone: '{timetz}'");
        var micros = ParseTimeMicros(timetz.AsSpan(0, sign)) - ParseOffsetSeconds(timetz.AsSpan(sign)) * MicrosPerSecond;
        micros = ((micros % MicrosPerDay) + MicrosPerDay) % MicrosPerDay;
        return FormatTime(micros) + "Z";
    }

    public static long FloorDiv(long a, long b) => (a / b) - ((a % b != 0 && (a < 0) != (b < 0)) ? 1 : 0);

    /// <summary>
    /// An interval in IntervalStyle postgres (<c>1 year 2 mons -3 days 04:05:06.5</c>) → its parts,
    /// the way PGInterval hands them to Debezium (seconds carry the fraction).
    /// </summary>
    public static (int Years, int Months, int Days, int Hours, int Minutes, double Seconds) ParseInterval(string text)
    {
        int years = 0, months = 0, days = 0, hours = 0, minutes = 0;
        double seconds = 0;
        var tokens = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        for (var i = 0; i < tokens.Length; i++)
        {
            var token = tokens[i];
            if (token.Contains(':', StringComparison.Ordinal))
            {
                var negative = token.StartsWith('-');
                var parts = token.TrimStart('-', '+').Split(':');
                var h = int.Parse(parts[0], Inv);
                var mi = parts.Length > 1 ? int.Parse(parts[1], Inv) : 0;
                var s = parts.Length > 2 ? double.Parse(parts[2], Inv) : 0;
                hours = negative ? -h : h;
                minutes = negative ? -mi : mi;
                seconds = negative ? -s : s;
                continue;
            }

            if (i + 1 >= tokens.Length)
                throw new FormatException($"not an interval in IntervalStyle postgres: '{text}'");
            var n = int.Parse(token, Inv);
            var unit = tokens[++i];
            if (unit.StartsWith("year", StringComparison.Ordinal))
                years = n;
            else if (unit.StartsWith("mon", StringComparison.Ordinal))
                months = n;
            else if (unit.StartsWith("day", StringComparison.Ordinal))
                days = n;
            else
                throw new FormatException($"not an interval in IntervalStyle postgres: '{text}'");
        }

        return (years, months, days, hours, minutes, seconds);
    }

    /// <summary>Debezium's MicroDuration: months count 365.25/12 days, in double arithmetic as Debezium computes them.</summary>
    public static long IntervalToMicroDuration(string text)
    {
        var (years, months, days, hours, minutes, seconds) = ParseInterval(text);
        const double daysPerMonth = 365.25 / 12.0d;
        var numberOfDays = (((years * 12) + months) * daysPerMonth) + days;
        var numberOfSeconds = ((((numberOfDays * 24) + hours) * 60) + minutes) * 60 + seconds;
        return (long)(numberOfSeconds * 1e6);
    }

    /// <summary>A MicroDuration back to an interval literal: whole days and a time part (months cannot be recovered).</summary>
    public static string FormatMicroDuration(long micros)
    {
        var negative = micros < 0;
        var abs = negative ? -(BigInteger)micros : micros;
        var days = (long)(abs / MicrosPerDay);
        var rest = (long)(abs % MicrosPerDay);
        var sign = negative ? "-" : "";
        return string.Create(Inv, $"{sign}{days} days {sign}{FormatTime(rest)}");
    }

    /// <summary>A numeric's text (<c>-12.340</c>) → unscaled value and scale (digits after the point).</summary>
    public static (BigInteger Unscaled, int Scale) ParseDecimal(string text)
    {
        var exponent = text.IndexOfAny(['e', 'E']);
        if (exponent >= 0)
        {
            var (u, s) = ParseDecimal(text[..exponent]);
            var e = int.Parse(text.AsSpan(exponent + 1), Inv);
            s -= e;
            if (s < 0)
            {
                u *= BigInteger.Pow(10, -s);
                s = 0;
            }

            return (u, s);
        }

        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var digits = dot < 0 ? text : string.Concat(text.AsSpan(0, dot), text.AsSpan(dot + 1));
        return (BigInteger.Parse(digits, NumberStyles.AllowLeadingSign, Inv), dot < 0 ? 0 : text.Length - dot - 1);
    }

    /// <summary>Re-scales to exactly <paramref name="toScale"/> digits (money and numeric(p,s) columns).</summary>
    public static BigInteger Rescale(BigInteger unscaled, int fromScale, int toScale)
    {
        if (toScale == fromScale)
            return unscaled;
        if (toScale > fromScale)
            return unscaled * BigInteger.Pow(10, toScale - fromScale);
        var divisor = BigInteger.Pow(10, fromScale - toScale);
        var q = BigInteger.DivRem(unscaled, divisor, out var r);
        if (!r.IsZero)
            throw new FormatException($"value has more than {toScale} decimal digits");
        return q;
    }

    public static string FormatDecimal(BigInteger unscaled, int scale)
    {
        var negative = unscaled.Sign < 0;
        var digits = BigInteger.Abs(unscaled).ToString(Inv);
        if (scale > 0)
        {
            if (digits.Length <= scale)
                digits = new string('0', scale - digits.Length + 1) + digits;
            digits = digits[..^scale] + "." + digits[^scale..];
        }
        else if (scale < 0)
        {
            digits += new string('0', -scale);
        }

        return negative ? "-" + digits : digits;
    }

    /// <summary>Java's BigInteger.toByteArray: minimal two's complement, big-endian.</summary>
    public static byte[] TwosComplement(BigInteger value) => value.ToByteArray(isUnsigned: false, isBigEndian: true);

    public static BigInteger FromTwosComplement(ReadOnlySpan<byte> bytes) =>
        bytes.Length == 0 ? BigInteger.Zero : new BigInteger(bytes, isUnsigned: false, isBigEndian: true);

    /// <summary>money in lc_monetary C/en_US form (<c>-$1,234.56</c>) → a plain number.</summary>
    public static string MoneyToNumber(string text)
    {
        var sb = new StringBuilder(text.Length);
        var negative = text.Contains('-', StringComparison.Ordinal) || text.StartsWith('(');
        foreach (var c in text)
        {
            if (char.IsAsciiDigit(c) || c == '.')
                sb.Append(c);
        }

        return negative ? "-" + sb : sb.ToString();
    }

    /// <summary>bytea hex output (<c>\x0a0b</c>) → bytes.</summary>
    public static byte[] ParseBytea(string text)
    {
        if (!text.StartsWith("\\x", StringComparison.Ordinal))
            throw new FormatException("bytea value is not in hex format: set bytea_output = 'hex' on the source");
        return Convert.FromHexString(text.AsSpan(2));
    }

    public static string FormatBytea(ReadOnlySpan<byte> bytes) => "\\x" + Convert.ToHexStringLower(bytes);

    /// <summary>
    /// A bit string → java.util.BitSet.toByteArray() of the bits Debezium sets: the last character
    /// is bit 0; little-endian bytes, trailing zero bytes dropped.
    /// </summary>
    public static byte[] BitsToBytes(string bits)
    {
        var bytes = new byte[(bits.Length + 7) / 8];
        var highest = -1;
        for (var i = 0; i < bits.Length; i++)
        {
            if (bits[bits.Length - 1 - i] == '1')
            {
                bytes[i / 8] |= (byte)(1 << (i % 8));
                highest = i;
            }
        }

        return bytes.AsSpan(0, (highest + 8) / 8).ToArray();
    }

    public static string BytesToBits(ReadOnlySpan<byte> bytes, int length)
    {
        var chars = new char[length];
        for (var i = 0; i < length; i++)
        {
            var set = i / 8 < bytes.Length && (bytes[i / 8] & (1 << (i % 8))) != 0;
            chars[length - 1 - i] = set ? '1' : '0';
        }

        return new string(chars);
    }

    /// <summary>
    /// Splits a one-dimensional array literal (<c>{1,NULL,"a,b"}</c>) into its elements (null for
    /// NULL). Multi-dimensional arrays are refused: Debezium has no schema for them either.
    /// </summary>
    public static List<string?> ParseArray(string text)
    {
        var result = new List<string?>();
        var s = text.AsSpan();
        if (s.Length > 0 && s[0] == '[')
            s = s[(s.IndexOf('=') + 1)..];
        if (s.Length < 2 || s[0] != '{' || s[^1] != '}')
            throw new FormatException($"not an array literal: '{text}'");
        s = s[1..^1];
        if (s.Length == 0)
            return result;
        var i = 0;
        while (i <= s.Length)
        {
            if (i < s.Length && s[i] == '{')
                throw new FormatException("multi-dimensional arrays are not supported in Debezium's format");
            var sb = new StringBuilder();
            var quoted = false;
            if (i < s.Length && s[i] == '"')
            {
                quoted = true;
                i++;
                while (s[i] != '"')
                {
                    if (s[i] == '\\')
                        i++;
                    sb.Append(s[i++]);
                }

                i++;
            }
            else
            {
                while (i < s.Length && s[i] != ',')
                    sb.Append(s[i++]);
            }

            var element = sb.ToString();
            result.Add(!quoted && element == "NULL" ? null : element);
            i++;
        }

        return result;
    }

    /// <summary>Java's Double.toString, which Jackson (and so JsonConverter) uses for float64.</summary>
    public static string JavaDouble(double value) => JavaFloating(value, value.ToString("R", Inv));

    /// <summary>Java's Float.toString, for float32.</summary>
    public static string JavaFloat(float value) => JavaFloating(value, value.ToString("R", Inv));

    private static string JavaFloating(double value, string shortest)
    {
        if (double.IsNaN(value))
            return "NaN";
        if (double.IsInfinity(value))
            return value > 0 ? "Infinity" : "-Infinity";
        if (value == 0)
            return 1 / value < 0 ? "-0.0" : "0.0";
        // Shortest round-trip digits, then Java's layout: plain between 1e-3 and 1e7, else d.dddE±n.
        var (digits, pointPosition, negative) = Decompose(shortest);
        var abs = Math.Abs(value);
        var sb = new StringBuilder();
        if (negative)
            sb.Append('-');
        if (abs >= 1e-3 && abs < 1e7)
        {
            if (pointPosition <= 0)
                sb.Append("0.").Append('0', -pointPosition).Append(digits);
            else if (pointPosition >= digits.Length)
                sb.Append(digits).Append('0', pointPosition - digits.Length).Append(".0");
            else
                sb.Append(digits.AsSpan(0, pointPosition)).Append('.').Append(digits.AsSpan(pointPosition));
        }
        else
        {
            sb.Append(digits[0]).Append('.').Append(digits.Length > 1 ? digits[1..] : "0").Append('E').Append((pointPosition - 1).ToString(Inv));
        }

        return sb.ToString();
    }

    private static (string Digits, int PointPosition, bool Negative) Decompose(string shortest)
    {
        var negative = shortest.StartsWith('-');
        var s = negative ? shortest[1..] : shortest;
        var exponent = 0;
        var e = s.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(s.AsSpan(e + 1), NumberStyles.AllowLeadingSign, Inv);
            s = s[..e];
        }

        var dot = s.IndexOf('.', StringComparison.Ordinal);
        var intPart = dot < 0 ? s : s[..dot];
        var fracPart = dot < 0 ? "" : s[(dot + 1)..];
        var digits = (intPart + fracPart).TrimStart('0');
        var leadingZeros = (intPart + fracPart).Length - digits.Length;
        var point = intPart.Length - leadingZeros + exponent;
        digits = digits.TrimEnd('0');
        return (digits.Length == 0 ? "0" : digits, point, negative);
    }
}

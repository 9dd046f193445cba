using System.Globalization;
using System.Text;
using System.Text.Json;
using Replicator.Core.Changes;

namespace Replicator.Kafka.Debezium;

/// <summary>
/// One column's mapping from PostgreSQL text to Debezium's Kafka Connect representation: its
/// schema (non-optional form; the serializer makes nullable columns optional) and a writer of the
/// JSON payload value. <see cref="WriteUnavailable"/> writes Debezium's unchanged-TOAST placeholder
/// in this column's type.
/// </summary>
internal sealed class ColumnConverter(ConnectSchema schema, Action<Utf8JsonWriter, string> write, Action<Utf8JsonWriter> writeUnavailable)
{
    public ConnectSchema Schema { get; } = schema;

    public Action<Utf8JsonWriter, string> Write { get; } = write;

    public Action<Utf8JsonWriter> WriteUnavailable { get; } = writeUnavailable;
}

/// <summary>
/// Debezium PostgreSQL connector type mapping with its defaults: decimal.handling.mode=precise,
/// time.precision.mode=adaptive, binary.handling.mode=bytes, hstore as json,
/// interval.handling.mode=numeric (or string, <see cref="DebeziumOptions.IntervalHandlingMode"/>).
/// Types Debezium cannot map (geometric types other than point, user domains over them,
/// multi-dimensional arrays) go out as plain strings: Debezium would drop such a column unless
/// include.unknown.datatypes is on, and the applier needs every column.
/// </summary>
internal static class ValueConverters
{
    public const string Unavailable = "__debezium_unavailable_value";
    private static readonly byte[] UnavailableBytes = Encoding.UTF8.GetBytes(Unavailable);
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static ConnectSchema Named(string type, string name, int version = 1, params (string, string)[] parameters) =>
        new(type, false, name, version) { Parameters = parameters.Length == 0 ? null : parameters.Select(p => new KeyValuePair<string, string>(p.Item1, p.Item2)).ToList() };

    public static ConnectSchema DecimalSchema(int scale, int? precision) =>
        precision is null
            ? Named("bytes", "org.apache.kafka.connect.data.Decimal", 1, ("scale", scale.ToString(Inv)))
            : Named("bytes", "org.apache.kafka.connect.data.Decimal", 1, ("scale", scale.ToString(Inv)), ("connect.decimal.precision", precision.Value.ToString(Inv)));

    public static readonly ConnectSchema VariableScaleDecimalSchema = ConnectSchema.Struct(
        "io.debezium.data.VariableScaleDecimal", false,
        [("scale", ConnectSchema.Primitive("int32", false)), ("value", ConnectSchema.Primitive("bytes", false))], version: 1, doc: "Variable scaled decimal");

    public static readonly ConnectSchema PointSchema = ConnectSchema.Struct(
        "io.debezium.data.geometry.Point", false,
        [("x", ConnectSchema.Primitive("float64", false)), ("y", ConnectSchema.Primitive("float64", false)),
         ("wkb", ConnectSchema.Primitive("bytes", true)), ("srid", ConnectSchema.Primitive("int32", true))], version: 1, doc: "Geometry (POINT)");

    private static void WriteUnavailableString(Utf8JsonWriter w) => w.WriteStringValue(Unavailable);

    private static void WriteUnavailableBytes(Utf8JsonWriter w) => w.WriteBase64StringValue(UnavailableBytes);

    private static ColumnConverter Str(ConnectSchema schema) => new(schema, (w, t) => w.WriteStringValue(t), WriteUnavailableString);

    public static ColumnConverter For(StreamColumn column, IPostgresTypeResolver types, DebeziumOptions options) =>
        For(column.TypeOid, column.TypeModifier, types, options);

    public static ColumnConverter For(uint oid, int typmod, IPostgresTypeResolver types, DebeziumOptions options)
    {
        switch (oid)
        {
            case PgOid.Bool:
                return new(ConnectSchema.Primitive("boolean", false), (w, t) => w.WriteBooleanValue(t is "t" or "true"), WriteUnavailableString);
            case PgOid.Int2:
                return new(ConnectSchema.Primitive("int16", false), (w, t) => w.WriteNumberValue(short.Parse(t, Inv)), WriteUnavailableString);
            case PgOid.Int4:
                return new(ConnectSchema.Primitive("int32", false), (w, t) => w.WriteNumberValue(int.Parse(t, Inv)), WriteUnavailableString);
            case PgOid.Int8:
            case PgOid.Oid:
                return new(ConnectSchema.Primitive("int64", false), (w, t) => w.WriteNumberValue(long.Parse(t, Inv)), WriteUnavailableString);
            case PgOid.Float4:
                return new(ConnectSchema.Primitive("float32", false), (w, t) => WriteJavaNumber(w, PgText.JavaFloat(float.Parse(t, Inv))), WriteUnavailableString);
            case PgOid.Float8:
                return new(ConnectSchema.Primitive("float64", false), (w, t) => WriteJavaNumber(w, PgText.JavaDouble(double.Parse(t, Inv))), WriteUnavailableString);
            case PgOid.Numeric:
            {
                var ps = PgOid.NumericPrecision(typmod);
                if (ps is null || ps.Value.Scale == 0 && ps.Value.Precision == 0)
                {
                    return new(VariableScaleDecimalSchema, (w, t) =>
                    {
                        var (unscaled, scale) = PgText.ParseDecimal(t);
                        w.WriteStartObject();
                        w.WriteNumber("scale", scale);
                        w.WriteBase64String("value", PgText.TwosComplement(unscaled));
                        w.WriteEndObject();
                    }, WriteUnavailableString);
                }

                var (precision, fixedScale) = ps.Value;
                return new(DecimalSchema(fixedScale, precision), (w, t) => WriteDecimal(w, t, fixedScale), WriteUnavailableBytes);
            }

            case PgOid.Money:
                return new(DecimalSchema(options.MoneyFractionDigits, null), (w, t) => WriteDecimal(w, PgText.MoneyToNumber(t), options.MoneyFractionDigits), WriteUnavailableBytes);
            case PgOid.Bytea:
                return new(ConnectSchema.Primitive("bytes", false), (w, t) => w.WriteBase64StringValue(PgText.ParseBytea(t)), WriteUnavailableBytes);
            case PgOid.Date:
                return new(Named("int32", "io.debezium.time.Date"), (w, t) => w.WriteNumberValue(PgText.ParseDate(t)), WriteUnavailableString);
            case PgOid.Time:
            {
                var p = PgOid.TimePrecision(typmod);
                return p is >= 0 and <= 3
                    ? new(Named("int32", "io.debezium.time.Time"), (w, t) => w.WriteNumberValue((int)(PgText.ParseTimeMicros(t) / 1000)), WriteUnavailableString)
                    : new(Named("int64", "io.debezium.time.MicroTime"), (w, t) => w.WriteNumberValue(PgText.ParseTimeMicros(t)), WriteUnavailableString);
            }

            case PgOid.Timestamp:
            {
                var p = PgOid.TimePrecision(typmod);
                return p is >= 0 and <= 3
                    ? new(Named("int64", "io.debezium.time.Timestamp"), (w, t) => w.WriteNumberValue(PgText.FloorDiv(PgText.ParseTimestampMicros(t), 1000)), WriteUnavailableString)
                    : new(Named("int64", "io.debezium.time.MicroTimestamp"), (w, t) => w.WriteNumberValue(PgText.ParseTimestampMicros(t)), WriteUnavailableString);
            }

            case PgOid.Timestamptz:
            {
                // Debezium pads to the column's declared fractional precision (6 when undeclared).
                var p = PgOid.TimePrecision(typmod);
                var width = p < 0 ? 6 : p;
                return new(Named("string", "io.debezium.time.ZonedTimestamp"), (w, t) =>
                {
                    if (t is "infinity" or "-infinity")
                        w.WriteStringValue(t);
                    else
                        w.WriteStringValue(PgText.FormatZonedTimestamp(PgText.ParseTimestamptzMicros(t), width));
                }, WriteUnavailableString);
            }

            case PgOid.Timetz:
                return new(Named("string", "io.debezium.time.ZonedTime"), (w, t) => w.WriteStringValue(PgText.FormatZonedTime(t)), WriteUnavailableString);
            case PgOid.Interval:
                return options.IntervalHandlingMode == "string"
                    ? new(Named("string", "io.debezium.time.Interval"), (w, t) => w.WriteStringValue(IsoInterval(t)), WriteUnavailableString)
                    : new(Named("int64", "io.debezium.time.MicroDuration"), (w, t) => w.WriteNumberValue(PgText.IntervalToMicroDuration(t)), WriteUnavailableString);
            case PgOid.Uuid:
                return Str(Named("string", "io.debezium.data.Uuid"));
            case PgOid.Json:
            case PgOid.Jsonb:
                return Str(Named("string", "io.debezium.data.Json"));
            case PgOid.Xml:
                return Str(Named("string", "io.debezium.data.Xml"));
            case PgOid.Tsvector:
                return Str(Named("string", "io.debezium.data.TsVector"));
            case PgOid.Bit:
            case PgOid.Varbit:
            {
                var length = typmod > 0 ? typmod : 0;
                if (oid == PgOid.Bit && length == 1)
                    return new(ConnectSchema.Primitive("boolean", false), (w, t) => w.WriteBooleanValue(t == "1"), WriteUnavailableString);
                if (length <= 1)
                    length = int.MaxValue;
                return new(Named("bytes", "io.debezium.data.Bits", 1, ("length", length.ToString(Inv))), (w, t) => w.WriteBase64StringValue(PgText.BitsToBytes(t)), WriteUnavailableBytes);
            }

            case PgOid.Point:
                return new(PointSchema, WritePoint, WriteUnavailableString);
        }

        var labels = types.EnumLabels(oid);
        if (labels is not null)
            return Str(Named("string", "io.debezium.data.Enum", 1, ("allowed", string.Join(',', labels))));

        var element = types.ArrayElementType(oid);
        if (element is not null)
        {
            var elementConverter = For(element.Value, typmod, types, options);
            return new(ConnectSchema.Array(elementConverter.Schema.WithOptional(true), false), (w, t) =>
            {
                w.WriteStartArray();
                foreach (var e in PgText.ParseArray(t))
                {
                    if (e is null)
                        w.WriteNullValue();
                    else
                        elementConverter.Write(w, e);
                }

                w.WriteEndArray();
            }, w =>
            {
                w.WriteStartArray();
                elementConverter.WriteUnavailable(w);
                w.WriteEndArray();
            });
        }

        // char, name, text, varchar, bpchar, inet, cidr, macaddr, ranges, citext, ltree and
        // anything Debezium does not know: a string with PostgreSQL's own text.
        return Str(ConnectSchema.Primitive("string", false));
    }

    private static void WriteJavaNumber(Utf8JsonWriter w, string javaText)
    {
        // Jackson quotes non-finite numbers ("NaN"); finite ones are plain JSON numbers.
        if (javaText is "NaN" or "Infinity" or "-Infinity")
            w.WriteStringValue(javaText);
        else
            w.WriteRawValue(javaText, skipInputValidation: true);
    }

    private static void WriteDecimal(Utf8JsonWriter w, string text, int scale)
    {
        if (text is "NaN" or "Infinity" or "-Infinity")
        {
            // Debezium sends special values as null under decimal.handling.mode=precise.
            w.WriteNullValue();
            return;
        }

        var (unscaled, s) = PgText.ParseDecimal(text);
        w.WriteBase64StringValue(PgText.TwosComplement(PgText.Rescale(unscaled, s, scale)));
    }

    private static void WritePoint(Utf8JsonWriter w, string text)
    {
        var inner = text.Trim('(', ')').Split(',');
        var x = double.Parse(inner[0], Inv);
        var y = double.Parse(inner[1], Inv);
        // Debezium sends the point also as OGC WKB: little-endian, type 1 (Point), x, y.
        var wkb = new byte[21];
        wkb[0] = 1;
        BitConverter.TryWriteBytes(wkb.AsSpan(1), 1);
        BitConverter.TryWriteBytes(wkb.AsSpan(5), x);
        BitConverter.TryWriteBytes(wkb.AsSpan(13), y);
        w.WriteStartObject();
        w.WritePropertyName("x");
        WriteJavaNumber(w, PgText.JavaDouble(x));
        w.WritePropertyName("y");
        WriteJavaNumber(w, PgText.JavaDouble(y));
        w.WriteBase64String("wkb", wkb);
        w.WriteNull("srid");
        w.WriteEndObject();
    }

    private static string IsoInterval(string text)
    {
        var (years, months, days, hours, minutes, seconds) = PgText.ParseInterval(text);
        var sec = PgText.JavaDouble(seconds);
        return string.Create(Inv, $"P{years}Y{months}M{days}DT{hours}H{minutes}M{sec}S");
    }
}

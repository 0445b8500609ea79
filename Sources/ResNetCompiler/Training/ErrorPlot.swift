import Foundation

/// Error curves as a standalone SVG, in the style of Fig. 6 of He et al. (2015):
/// error (%) against iterations, training error as a thin dashed line and test
/// error as a bold line, one colour per run, a legend naming the runs and the
/// two line styles.
///
/// The input is the `train.csv` that `runtime/trainer.c` writes (`#` comment
/// lines, then a header naming the columns; empty cells where a quantity was
/// not measured). The output depends only on the data: no timestamps, fixed
/// number formatting, so the same log always gives the same bytes.
public enum ErrorPlot {
    /// One training run's curves.
    public struct Run: Equatable, Sendable {
        public var name: String
        /// (iteration, error %) where the training error was measured.
        public var train: [Point]
        /// (iteration, error %) where the test error was measured.
        public var test: [Point]
        /// (iteration, error %) where the validation error was measured.
        public var validation: [Point]

        public init(name: String, train: [Point] = [], test: [Point] = [], validation: [Point] = []) {
            self.name = name
            self.train = train
            self.test = test
            self.validation = validation
        }
    }

    /// A point of a curve.
    public struct Point: Equatable, Sendable {
        public var iteration: Double
        public var error: Double
        public init(_ iteration: Double, _ error: Double) {
            self.iteration = iteration
            self.error = error
        }
    }

    /// Reads a `train.csv`; `source` names it in errors.
    public static func parse(csv text: String, name: String, source: String = "train.csv") throws -> Run {
        var run = Run(name: name)
        var columns: [String: Int]?
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard let index = columns else {
                let header = Dictionary(cells.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
                guard header["iteration"] != nil else {
                    throw CompileError("\(source):\(number + 1): expected a header with an 'iteration' column, found '\(line)'")
                }
                columns = header
                continue
            }
            func value(_ column: String) throws -> Double? {
                guard let i = index[column], i < cells.count, !cells[i].isEmpty else { return nil }
                guard let v = Double(cells[i]), v.isFinite else {
                    throw CompileError("\(source):\(number + 1): '\(cells[i])' in column \(column) is not a number")
                }
                return v
            }
            guard let iteration = try value("iteration") else {
                throw CompileError("\(source):\(number + 1): row without an iteration")
            }
            if let e = try value("train_error") { run.train.append(Point(iteration, e)) }
            if let e = try value("test_error") { run.test.append(Point(iteration, e)) }
            if let e = try value("val_error") { run.validation.append(Point(iteration, e)) }
        }
        if columns == nil { throw CompileError("\(source): no header line (iteration,lr,loss,...)") }
        return run
    }

    /// Line colours for successive runs (the paper's figure uses one hue per depth).
    static let palette = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]

    /// The figure. `maxError` fixes the top of the y axis (Fig. 6 uses 20 and
    /// lets early training error run off the top); nil fits the data.
    public static func svg(_ runs: [Run], title: String? = nil, maxError: Double? = nil) -> String {
        let width = 640.0, height = 420.0
        let left = 64.0, right = 24.0, top = title == nil ? 20.0 : 40.0, bottom = 56.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom

        let allPoints = runs.flatMap { $0.train + $0.test + $0.validation }
        let lastIteration = allPoints.map(\.iteration).max() ?? 0
        let highestError = allPoints.map(\.error).max() ?? 0

        // x: iterations; in units of 1e4 past 10k, as the paper labels "iter. (1e4)".
        let unit = lastIteration >= 10_000 ? 10_000.0 : 1.0
        let xStep = max(niceStep(max(lastIteration, 1) / unit / 8) * unit, 1) // iterations are whole
        let xMax = max(ceil(lastIteration / xStep), 1) * xStep
        // y: error %, from 0 to a round number above the data.
        let yMax = maxError ?? niceCeiling(max(highestError * 1.05, 5))
        let yStep = niceStep(yMax / 5)

        func x(_ iteration: Double) -> Double { left + iteration / xMax * plotWidth }
        func y(_ error: Double) -> Double { top + plotHeight - error / yMax * plotHeight }

        var svg: [String] = []
        svg.append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        svg.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(width))\" height=\"\(f(height))\" viewBox=\"0 0 \(f(width)) \(f(height))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">")
        svg.append("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>")
        svg.append("<defs><clipPath id=\"plot\"><rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\"/></clipPath></defs>")
        if let title {
            svg.append("<text x=\"\(f(left + plotWidth / 2))\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">\(escape(title))</text>")
        }

        // Ticks and labels, then the frame.
        var tick = 0.0
        while tick <= yMax + yStep / 1000 {
            let ty = y(tick)
            svg.append("<line x1=\"\(f(left))\" y1=\"\(f(ty))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(ty))\" stroke=\"#e6e6e6\" stroke-width=\"0.5\"/>")
            svg.append("<line x1=\"\(f(left))\" y1=\"\(f(ty))\" x2=\"\(f(left + 5))\" y2=\"\(f(ty))\" stroke=\"#000000\" stroke-width=\"1\"/>")
            svg.append("<text x=\"\(f(left - 6))\" y=\"\(f(ty + 4))\" text-anchor=\"end\">\(label(tick))</text>")
            tick += yStep
        }
        tick = 0
        while tick <= xMax + xStep / 1000 {
            let tx = x(tick)
            svg.append("<line x1=\"\(f(tx))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(tx))\" y2=\"\(f(top + plotHeight - 5))\" stroke=\"#000000\" stroke-width=\"1\"/>")
            svg.append("<text x=\"\(f(tx))\" y=\"\(f(top + plotHeight + 18))\" text-anchor=\"middle\">\(label(tick / unit))</text>")
            tick += xStep
        }
        svg.append("<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#000000\" stroke-width=\"1\"/>")
        svg.append("<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 14))\" text-anchor=\"middle\">\(unit == 1 ? "iter." : "iter. (1e4)")</text>")
        svg.append("<text x=\"16\" y=\"\(f(top + plotHeight / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(f(top + plotHeight / 2)))\">error (%)</text>")

        // The curves: thin dashed training error under bold test error.
        func polyline(_ points: [Point], colour: String, width: Double, dash: String?) -> String? {
            guard !points.isEmpty else { return nil }
            let sorted = points.sorted { $0.iteration < $1.iteration }
            let coordinates = sorted.map { "\(f(x($0.iteration))),\(f(y($0.error)))" }.joined(separator: " ")
            let dashing = dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
            if sorted.count == 1 {
                return "<circle cx=\"\(f(x(sorted[0].iteration)))\" cy=\"\(f(y(sorted[0].error)))\" r=\"\(f(width + 1))\" fill=\"\(colour)\" clip-path=\"url(#plot)\"/>"
            }
            return "<polyline points=\"\(coordinates)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"\(f(width))\"\(dashing) stroke-linejoin=\"round\" clip-path=\"url(#plot)\"/>"
        }
        for (i, run) in runs.enumerated() {
            let colour = palette[i % palette.count]
            svg += [
                polyline(run.train, colour: colour, width: 1, dash: "4 3"),
                polyline(run.validation, colour: colour, width: 2.5, dash: "1 3"),
                polyline(run.test, colour: colour, width: 2.5, dash: nil),
            ].compactMap { $0 }
        }

        // Legend, top right inside the frame: one entry per run, then the line styles.
        let hasValidation = runs.contains { !$0.validation.isEmpty }
        var entries: [(text: String, colour: String, width: Double, dash: String?)] = runs.enumerated().map {
            ($1.name, palette[$0 % palette.count], 2.5, nil)
        }
        entries.append(("training error", "#000000", 1, "4 3"))
        entries.append(("test error", "#000000", 2.5, nil))
        if hasValidation { entries.append(("validation error", "#000000", 2.5, "1 3")) }
        let longest = entries.map(\.text.count).max() ?? 0
        let boxWidth = 44 + Double(longest) * 6.6, boxHeight = 8 + Double(entries.count) * 17
        let boxX = left + plotWidth - boxWidth - 8, boxY = top + 8
        svg.append("<rect x=\"\(f(boxX))\" y=\"\(f(boxY))\" width=\"\(f(boxWidth))\" height=\"\(f(boxHeight))\" fill=\"#ffffff\" fill-opacity=\"0.9\" stroke=\"#000000\" stroke-width=\"0.5\"/>")
        for (i, entry) in entries.enumerated() {
            let ly = boxY + 14 + Double(i) * 17
            let dashing = entry.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
            svg.append("<line x1=\"\(f(boxX + 8))\" y1=\"\(f(ly - 4))\" x2=\"\(f(boxX + 34))\" y2=\"\(f(ly - 4))\" stroke=\"\(entry.colour)\" stroke-width=\"\(f(entry.width))\"\(dashing)/>")
            svg.append("<text x=\"\(f(boxX + 40))\" y=\"\(f(ly))\">\(escape(entry.text))</text>")
        }
        if allPoints.isEmpty {
            svg.append("<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(top + plotHeight / 2))\" text-anchor=\"middle\" fill=\"#888888\">no measurements yet</text>")
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    /// The smallest of 1, 2, 2.5, 5 × 10^k at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let magnitude = pow(10, floor(log10(raw)))
        for m in [1, 2, 2.5, 5, 10] where m * magnitude >= raw * (1 - 1e-9) { return m * magnitude }
        return 10 * magnitude
    }

    /// A round number at least `value` for the top of the error axis.
    static func niceCeiling(_ value: Double) -> Double {
        for top in [5.0, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100] where top >= value { return top }
        return ceil(value / 20) * 20
    }

    /// Coordinates: two decimals, no "-0.00".
    static func f(_ v: Double) -> String {
        let s = String(format: "%.2f", v)
        return s == "-0.00" ? "0.00" : s
    }

    /// Tick labels: as few decimals as the value needs (0, 2.5, 10).
    static func label(_ v: Double) -> String {
        for decimals in 0...3 {
            let s = String(format: "%.\(decimals)f", v)
            if abs((Double(s) ?? v) - v) < 1e-9 { return s }
        }
        return String(format: "%.3f", v)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

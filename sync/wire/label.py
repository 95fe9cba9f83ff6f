"""The label of an exported copy (rule clause 12): unit, maker, time, case name and number, and
which copy of two, in Chinese as the clause names them (English beside each for a reader).

Shared by the station's export (agent/access/export.py) and the centre's
(central/access_export.py), so both copies of a case read alike (docs/export.md)."""

from __future__ import annotations

from dataclasses import dataclass

LABEL_FILE = "LABEL.txt"


@dataclass(frozen=True)
class Label:
    unit: str
    maker: str
    made_at: str
    case_name: str
    case_number: str
    copy: int
    copies: int
    recordings: int
    payload_bytes: int
    station: str
    access_request: str
    approved_by: str

    def text(self) -> str:
        lines = [
            "执法音像资料长期保存副本 (long-term copy of law-enforcement recordings)",
            f"单位 (unit): {self.unit}",
            f"制作人 (maker): {self.maker}",
            f"制作时间 (made at): {self.made_at}",
            f"案件名称 (case name): {self.case_name}",
            f"案件编号 (case number): {self.case_number}",
            f"副本 (copy): 第 {self.copy} 份，共 {self.copies} 份 ({self.copy} of {self.copies})",
            f"文件 (files): {self.recordings} 个，{self.payload_bytes} 字节 (bytes)",
            f"工作站 (station): {self.station}",
            f"调阅审批 (access approval): {self.access_request}，批准人 (approved by) "
            f"{self.approved_by}",
            "核验 (check): sha256sum -c manifest-sha256.txt",
        ]
        return "\n".join(lines) + "\n"
